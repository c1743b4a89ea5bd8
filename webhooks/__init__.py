"""Standard Webhooks adapter: signing and sending one webhook over HTTP. No SQL, no domain rules."""
