-- When each owner last had a job claimed: the next job goes to the owner served longest ago,
-- so one user's backlog does not hold everyone else's behind it.
CREATE TABLE owner_turns (
    owner TEXT PRIMARY KEY,
    last_claimed BIGINT NOT NULL
);
