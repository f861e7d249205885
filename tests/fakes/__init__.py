"""Strict loopback fakes of the external services followupd talks to (Google Cloud Tasks and its token
endpoints/JWKS, the voice-agent API). Import as a package (`from fakes import fake_cloudtasks` with tests/ on
sys.path) or as flat modules (`import fake_cloudtasks` with tests/fakes on sys.path); both work."""
