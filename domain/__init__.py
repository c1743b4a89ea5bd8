"""Pure business rules: money, state machines, fees and ledger postings. No I/O here."""
