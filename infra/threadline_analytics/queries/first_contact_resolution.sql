-- First contact resolution (FCR) across channels: of the conversations closed, the
-- share resolved without a repeat contact, whatever channels they used. Also the
-- outcome counts. docs/analytics.md
WITH closed AS (
  SELECT
    conversation.id AS conversation_id,
    conversation.resolution AS resolution,
    row_number() OVER (PARTITION BY conversation.id ORDER BY occurred_at DESC) AS copy
  FROM threadline_events
  WHERE type = 'conversation.closed'
),
reopened AS (
  SELECT DISTINCT conversation.id AS conversation_id
  FROM threadline_events
  WHERE type = 'conversation.reopened'
),
outcomes AS (
  SELECT
    closed.resolution,
    CASE WHEN reopened.conversation_id IS NULL THEN 0 ELSE 1 END AS repeat_contact
  FROM closed
  LEFT JOIN reopened ON reopened.conversation_id = closed.conversation_id
  WHERE closed.copy = 1
)
SELECT
  count(*) AS closed_conversations,
  sum(CASE WHEN resolution = 'resolved' THEN 1 ELSE 0 END) AS resolved,
  sum(CASE WHEN resolution = 'unresolved' THEN 1 ELSE 0 END) AS unresolved,
  sum(CASE WHEN resolution = 'abandoned' THEN 1 ELSE 0 END) AS abandoned,
  sum(CASE WHEN resolution = 'resolved' THEN repeat_contact ELSE 0 END) AS reopened,
  sum(CASE WHEN resolution = 'resolved' AND repeat_contact = 0 THEN 1 ELSE 0 END)
    AS resolved_first_contact,
  CAST(sum(CASE WHEN resolution = 'resolved' AND repeat_contact = 0 THEN 1 ELSE 0 END) AS DOUBLE)
    / nullif(count(*), 0) AS fcr_rate
FROM outcomes
