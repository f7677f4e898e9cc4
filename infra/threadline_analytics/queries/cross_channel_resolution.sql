-- Cross-channel resolution rate: of the closed conversations in which the customer
-- wrote on more than one channel, the share resolved without the customer having to
-- come back (no repeat contact). docs/analytics.md
WITH closed AS (
  SELECT
    conversation.id AS conversation_id,
    conversation.resolution AS resolution,
    cardinality(conversation.metrics.channels_used) AS channels,
    row_number() OVER (PARTITION BY conversation.id ORDER BY occurred_at DESC) AS copy
  FROM threadline_events
  WHERE type = 'conversation.closed'
),
reopened AS (
  SELECT DISTINCT conversation.id AS conversation_id
  FROM threadline_events
  WHERE type = 'conversation.reopened'
)
SELECT
  count(*) AS cross_channel_conversations,
  sum(CASE WHEN closed.resolution = 'resolved' AND reopened.conversation_id IS NULL
      THEN 1 ELSE 0 END) AS resolved_without_repeat,
  CAST(sum(CASE WHEN closed.resolution = 'resolved' AND reopened.conversation_id IS NULL
      THEN 1 ELSE 0 END) AS DOUBLE) / nullif(count(*), 0) AS cross_channel_resolution_rate
FROM closed
LEFT JOIN reopened ON reopened.conversation_id = closed.conversation_id
WHERE closed.copy = 1 AND closed.channels > 1
