-- Each segment's words with their times (JSON: [{"word", "start", "end"}]), for word
-- timestamps on the OpenAI-compatible endpoint.
ALTER TABLE transcript_segments ADD COLUMN words TEXT NOT NULL DEFAULT '[]';
