WITH now AS (SELECT MAX(ts) AS t FROM events),
created AS (
  SELECT CAST("payload.object.id" AS TEXT) AS meeting_id, "payload.object.timezone" AS meeting_timezone
  FROM events
  WHERE event = 'meeting.created' AND ts > (SELECT t FROM now) - 14 * 86400
)
SELECT j.rowid
FROM events j JOIN created c ON CAST(j."payload.object.id" AS TEXT) = c.meeting_id
WHERE j.event = 'meeting.participant_joined'
  AND j.ts > (SELECT t FROM now) - 86400
  AND j."payload.object.timezone" IS NOT NULL
  AND j."payload.object.timezone" NOT IN ('UTC')
  AND j."payload.object.timezone" <> c.meeting_timezone
