from storage.ledger import invariant_violations
from storage.migrate import migration_files


async def test_fresh_database_is_migrated_and_clean(pool):
    async with pool.acquire() as conn:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert versions == [version for version, _ in migration_files()]
        assert versions[:2] == ["0001_init", "0002_withdrawals"]
        assert await invariant_violations(conn) == []
