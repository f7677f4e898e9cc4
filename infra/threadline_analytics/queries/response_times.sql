-- First response time (every closed conversation that got a reply) and resolution
-- time (resolved conversations, opened_at to closed_at) as distributions over fixed
-- buckets, with each measure's count and mean on every row. docs/analytics.md
WITH closed AS (
  SELECT
    conversation.resolution AS resolution,
    conversation.metrics.first_response_seconds AS first_response_seconds,
    conversation.metrics.time_to_close_seconds AS time_to_close_seconds,
    row_number() OVER (PARTITION BY conversation.id ORDER BY occurred_at DESC) AS copy
  FROM threadline_events
  WHERE type = 'conversation.closed'
),
times AS (
  SELECT 'first_response' AS measure, first_response_seconds AS seconds
  FROM closed
  WHERE copy = 1 AND first_response_seconds IS NOT NULL
  UNION ALL
  SELECT 'resolution' AS measure, time_to_close_seconds AS seconds
  FROM closed
  WHERE copy = 1 AND resolution = 'resolved' AND time_to_close_seconds IS NOT NULL
),
bucketed AS (
  SELECT
    measure,
    seconds,
    CASE
      WHEN seconds < 60 THEN 0
      WHEN seconds < 300 THEN 1
      WHEN seconds < 900 THEN 2
      WHEN seconds < 3600 THEN 3
      WHEN seconds < 14400 THEN 4
      WHEN seconds < 86400 THEN 5
      ELSE 6
    END AS bucket
  FROM times
)
SELECT
  measure,
  bucket,
  CASE bucket
    WHEN 0 THEN '< 1 min'
    WHEN 1 THEN '1-5 min'
    WHEN 2 THEN '5-15 min'
    WHEN 3 THEN '15-60 min'
    WHEN 4 THEN '1-4 h'
    WHEN 5 THEN '4-24 h'
    ELSE '>= 24 h'
  END AS bucket_label,
  count(*) AS conversations,
  sum(count(*)) OVER (PARTITION BY measure) AS measured_conversations,
  sum(sum(seconds)) OVER (PARTITION BY measure) / sum(count(*)) OVER (PARTITION BY measure)
    AS mean_seconds
FROM bucketed
GROUP BY measure, bucket
ORDER BY measure, bucket
