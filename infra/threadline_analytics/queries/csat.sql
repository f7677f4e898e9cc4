-- CSAT per channel and overall: of the ratings (1-5) customers gave, the share of 4s
-- and 5s, and the mean score; one rating per conversation (the latest). The channel
-- is the one the survey was answered on; 'all' is every channel. docs/analytics.md
WITH ratings AS (
  SELECT
    rating.channel AS channel,
    rating.score AS score,
    row_number() OVER (PARTITION BY rating.conversation_id ORDER BY occurred_at DESC) AS copy
  FROM threadline_events
  WHERE type = 'conversation.rated'
),
latest AS (
  SELECT channel, score FROM ratings WHERE copy = 1
),
scoped AS (
  SELECT 0 AS scope_order, channel, score FROM latest
  UNION ALL
  SELECT 1 AS scope_order, 'all' AS channel, score FROM latest
)
SELECT
  channel,
  count(*) AS ratings,
  sum(CASE WHEN score >= 4 THEN 1 ELSE 0 END) AS satisfied,
  CAST(sum(CASE WHEN score >= 4 THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS csat,
  CAST(sum(score) AS DOUBLE) / count(*) AS mean_score
FROM scoped
GROUP BY scope_order, channel
ORDER BY scope_order, channel
