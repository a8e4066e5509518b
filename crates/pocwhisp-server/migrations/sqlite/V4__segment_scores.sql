-- The decoder's own scores of each segment, when it gives them (Whisper): the mean
-- log-probability of its tokens and the probability that its window held no speech, for the
-- OpenAI endpoint's verbose_json. NULL for engines that do not score.
ALTER TABLE transcript_segments ADD COLUMN avg_logprob REAL;
ALTER TABLE transcript_segments ADD COLUMN no_speech_prob REAL;
