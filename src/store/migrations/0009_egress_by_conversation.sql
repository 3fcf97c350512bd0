-- The web feed of workflow posts (`GET /v1/workflows/feed/NAME`, refreshed by the web page
-- every few seconds) reads one conversation's egress rows, newest first: without this index
-- that is a scan of every reply ever sent.
CREATE INDEX egress_conversation ON egress (conversation, created_at);
