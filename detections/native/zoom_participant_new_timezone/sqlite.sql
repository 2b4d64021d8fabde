WITH now AS (SELECT MAX(ts) AS t FROM events),
known AS (
  SELECT DISTINCT "payload.object.timezone" AS tz FROM events
  WHERE event = 'meeting.participant_joined'
    AND ts > (SELECT t FROM now) - 15 * 86400 AND ts <= (SELECT t FROM now) - 86400
)
SELECT rowid FROM events
WHERE event = 'meeting.participant_joined'
  AND ts > (SELECT t FROM now) - 86400
  AND "payload.object.timezone" IS NOT NULL
  AND "payload.object.timezone" NOT IN (SELECT tz FROM known WHERE tz IS NOT NULL)
