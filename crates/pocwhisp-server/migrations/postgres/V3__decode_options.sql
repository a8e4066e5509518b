-- How each upload asked to be decoded (JSON: language, task, prompt, temperature): the job
-- decodes with it, and a transcript is reused only for the same audio, engine, model and
-- options. And the language the transcript is in, given or detected.
ALTER TABLE audio_sessions ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE audio_sessions ADD COLUMN language TEXT;
