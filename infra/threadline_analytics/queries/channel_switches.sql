-- Channel switches per conversation: how many closed conversations had 0, 1, 2, ...
-- switches (the customer wrote on another channel than their previous message), with
-- the average over all of them on every row. docs/analytics.md
WITH closed AS (
  SELECT
    coalesce(conversation.metrics.channel_switches, 0) AS channel_switches,
    row_number() OVER (PARTITION BY conversation.id ORDER BY occurred_at DESC) AS copy
  FROM threadline_events
  WHERE type = 'conversation.closed'
)
SELECT
  channel_switches,
  count(*) AS conversations,
  sum(count(*)) OVER () AS all_conversations,
  CAST(sum(channel_switches * count(*)) OVER () AS DOUBLE) / sum(count(*)) OVER ()
    AS switches_per_conversation
FROM closed
WHERE copy = 1
GROUP BY channel_switches
ORDER BY channel_switches
