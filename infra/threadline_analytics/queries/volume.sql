-- Volume per channel per day: messages received from customers and replies queued
-- to them, per UTC day (the dt partition) and channel. docs/analytics.md
WITH messages AS (
  SELECT
    dt AS day,
    message.channel AS channel,
    message.direction AS direction,
    row_number() OVER (PARTITION BY message.id, type ORDER BY occurred_at) AS copy
  FROM threadline_events
  WHERE type IN ('message.received', 'message.queued')
)
SELECT
  day,
  channel,
  sum(CASE WHEN direction = 'inbound' THEN 1 ELSE 0 END) AS inbound,
  sum(CASE WHEN direction = 'outbound' THEN 1 ELSE 0 END) AS outbound,
  count(*) AS messages
FROM messages
WHERE copy = 1
GROUP BY day, channel
ORDER BY day, channel
