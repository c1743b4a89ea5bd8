"""`payments`: one command for every process and operator task.

payments migrate                       apply database migrations (the release phase)
payments web                           IPN endpoint, JSON API, /healthz, /metrics on $PORT
payments worker [dramatiq options]     the dramatiq workers (WORKER_PROCESSES, WORKER_THREADS)
payments scheduler                     enqueue due polls and lost settlements
payments simulator                     the offline NOWPayments sandbox
payments currencies sync|list|activate CODE|deactivate CODE
payments balance USER_ID               balance and recent history
payments demo                          the whole pipeline end to end, offline by default
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import Sequence

from entrypoints.logs import configure_logging
from settings import Settings, SettingsError, load_settings

WORKER_SHUTDOWN_TIMEOUT_MS = 25_000  # platforms kill 30 s after SIGTERM


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings)
    return settings


def cmd_migrate(_: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.migrate import migrate

    settings = _settings()

    async def run() -> list[str]:
        conn = await connect(settings.database_url.get_secret_value())
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def cmd_web(_: argparse.Namespace) -> int:
    from entrypoints.web.app import serve

    serve(_settings())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    settings.require("nowpayments_api_key")
    dramatiq = shutil.which("dramatiq") or os.path.join(os.path.dirname(sys.executable), "dramatiq")
    argv = [
        dramatiq,
        "workers.worker_main",
        "--processes",
        str(settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
        "--worker-shutdown-timeout",
        str(WORKER_SHUTDOWN_TIMEOUT_MS),
        # dramatiq's launcher waits this long for a "ready" signal that a child dying at boot never sends;
        # we fork no extra processes, so a short wait only makes a failed boot exit sooner.
        "--worker-fork-timeout",
        "1000",
        "--skip-logging",
        *args.dramatiq_args,
    ]
    os.execv(dramatiq, argv)  # noqa: S606 - replaces this process with the dramatiq CLI


def cmd_scheduler(_: argparse.Namespace) -> int:
    from entrypoints.scheduler import run_scheduler
    from workers.actors import declare_actors
    from workers.broker import build_broker
    from workers.enqueue import ActorEnqueuer

    settings = _settings()
    broker = build_broker(settings)
    declare_actors(broker)
    asyncio.run(run_scheduler(settings, ActorEnqueuer(broker)))
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from gateway.simulator import serve

    configure_logging(level=os.environ.get("LOG_LEVEL", "INFO"), fmt=os.environ.get("LOG_FORMAT", "console"))
    secret = os.environ.get("NOWPAYMENTS_IPN_SECRET")
    if not secret:
        raise SettingsError("NOWPAYMENTS_IPN_SECRET is required for the simulator (it signs IPNs with it)")
    serve(
        args.host,
        args.port,
        secret,
        os.environ.get("NOWPAYMENTS_API_KEY"),
        args.auto_advance,
        payout_email=os.environ.get("NOWPAYMENTS_EMAIL"),
        payout_password=os.environ.get("NOWPAYMENTS_PASSWORD"),
    )
    return 0


def cmd_currencies(args: argparse.Namespace) -> int:
    from services.context import gateway_from_settings
    from services.sync_currencies import sync_currencies
    from storage import currencies
    from storage.db import create_pool, transaction

    settings = _settings()

    async def run() -> int:
        pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
        try:
            if args.action == "sync":
                settings.require("nowpayments_api_key")
                async with gateway_from_settings(settings) as gateway:
                    synced = await sync_currencies(pool, gateway)
                print(f"synced {len(synced)} currencies ({sum(c.gateway_enabled for c in synced)} enabled)")
            elif args.action == "list":
                async with pool.acquire() as conn:
                    for c in await currencies.list_currencies(conn):
                        state = "active" if c.active else ("off by operator" if not c.operator_active else "off")
                        memo = " memo" if c.extra_id_required else ""
                        print(f"{c.code:12} {c.network or '-':8} min ${c.min_amount_usd or '-':>8} {state}{memo}")
            else:
                if not args.code:
                    print("a currency code is required", file=sys.stderr)
                    return 2
                async with transaction(pool) as conn:
                    found = await currencies.set_operator_active(conn, args.code.lower(), args.action == "activate")
                if not found:
                    print(f"no currency {args.code!r}", file=sys.stderr)
                    return 1
                print(f"{args.code.lower()} {args.action}d")
            return 0
        finally:
            await pool.close()

    return asyncio.run(run())


def cmd_balance(args: argparse.Namespace) -> int:
    from domain.money import format_usd
    from storage import ledger
    from storage.db import connect

    settings = _settings()

    async def run() -> None:
        conn = await connect(settings.database_url.get_secret_value())
        try:
            balance = await ledger.user_balance(conn, args.user_id)
            history = await ledger.user_history(conn, args.user_id, limit=args.limit)
        finally:
            await conn.close()
        print(f"user {balance.user_id}: balance {format_usd(balance.balance_usd)}, held {format_usd(balance.held_usd)}")
        print(
            f"  total deposited {format_usd(balance.total_deposited)}, withdrawn {format_usd(balance.total_withdrawn)}"
        )
        for item in history:
            print(
                f"  {item.created_at:%Y-%m-%d %H:%M:%S}  {item.type:10} {format_usd(item.amount_usd):>12}"
                f"  balance after {format_usd(item.balance_after):>12}  {item.description}"
            )

    asyncio.run(run())
    return 0


def cmd_withdrawals(args: argparse.Namespace) -> int:
    """Operator actions on withdrawals; every decision is recorded with the operator and the note."""
    from domain.errors import InvalidRequest, InvalidTransition
    from domain.money import format_usd
    from services.context import StageContext, gateway_from_settings
    from services.decide_withdrawal import approve_withdrawal, complete_withdrawal_manually, reject_withdrawal
    from storage import withdrawals
    from storage.db import create_pool
    from workers.actors import declare_actors
    from workers.broker import build_broker
    from workers.enqueue import ActorEnqueuer

    settings = _settings()
    operator = args.operator or os.environ.get("USER") or "cli"

    async def run() -> int:
        pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
        broker = build_broker(settings)
        declare_actors(broker)
        ctx = StageContext(pool, gateway_from_settings(settings), settings, ActorEnqueuer(broker))
        try:
            if args.action == "list":
                async with pool.acquire() as conn:
                    for w in await withdrawals.list_withdrawals(conn, status=args.status):
                        print(
                            f"{w.id}  {w.status.value:10} {w.user_id:16} {format_usd(w.amount_usd):>12}"
                            f" → {format_usd(w.final_amount_usd):>12} {w.currency_code} {w.wallet_address}"
                            + (f"  REVIEW: {w.review_reason}" if w.review_reason else "")
                        )
                return 0
            if not args.withdrawal_id:
                print("a withdrawal id is required", file=sys.stderr)
                return 2
            if args.action == "show":
                async with pool.acquire() as conn:
                    w = await withdrawals.get_withdrawal(conn, args.withdrawal_id)
                    events = await withdrawals.list_events(conn, args.withdrawal_id) if w else []
                if w is None:
                    print(f"no withdrawal {args.withdrawal_id!r}", file=sys.stderr)
                    return 1
                print(
                    f"{w.id} {w.status.value}: {format_usd(w.amount_usd)} for {w.user_id}, fees "
                    f"{format_usd(w.total_fee_usd)}, pays {format_usd(w.final_amount_usd)} in {w.currency_code}"
                    f" to {w.wallet_address}{' memo ' + w.extra_id if w.extra_id else ''}"
                )
                for e in events:
                    print(
                        f"  {e['created_at']:%Y-%m-%d %H:%M:%S} {e['from_status'] or '-':>10} → {e['to_status']:10}"
                        f" by {e['actor']}: {e['note']}"
                    )
                return 0
            if args.action == "approve":
                w = await approve_withdrawal(ctx, args.withdrawal_id, operator=operator, note=args.note or "")
            elif args.action == "reject":
                w = await reject_withdrawal(ctx, args.withdrawal_id, operator=operator, note=args.note or "")
            else:
                w = await complete_withdrawal_manually(
                    ctx, args.withdrawal_id, tx_hash=args.tx_hash or "", operator=operator, note=args.note or ""
                )
            print(f"{w.id} is now {w.status.value}")
            return 0
        except (InvalidRequest, InvalidTransition) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        finally:
            await ctx.gateway.close()
            await pool.close()
            broker.close()

    return asyncio.run(run())


def cmd_deposits(args: argparse.Namespace) -> int:
    """Deposits held for review: list them, or release one (credit it) with a note."""
    from decimal import Decimal, InvalidOperation

    from domain.errors import InvalidRequest
    from domain.money import format_usd
    from services.release_deposit import dismiss_deposit_hold, release_held_deposit
    from storage import payments
    from storage.db import create_pool

    settings = _settings()
    operator = args.operator or os.environ.get("USER") or "cli"

    async def run() -> int:
        pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=2)
        try:
            if args.action == "held":
                async with pool.acquire() as conn:
                    for p in await payments.list_held(conn):
                        print(
                            f"{p.id}  {p.status.value:14} {p.user_id:16} ordered {format_usd(p.amount_usd):>10}"
                            f"  received {p.actually_paid or 0} of {p.pay_amount or '?'} {p.currency_code}"
                            f"  — {p.hold_reason}"
                        )
                return 0
            if not args.payment_id:
                print("a payment id is required", file=sys.stderr)
                return 2
            try:
                credit = Decimal(args.credit) if args.credit else None
            except InvalidOperation:
                print(f"--credit {args.credit!r} is not a decimal amount", file=sys.stderr)
                return 2
            try:
                if args.action == "dismiss":
                    p = await dismiss_deposit_hold(pool, args.payment_id, operator=operator, note=args.note or "")
                    print(f"{p.id}: hold dismissed, nothing credited")
                    return 0
                p = await release_held_deposit(
                    pool, args.payment_id, operator=operator, note=args.note or "", credit_usd=credit
                )
            except InvalidRequest as exc:
                print(f"refused: {exc}", file=sys.stderr)
                return 1
            print(f"{p.id} released: {format_usd(p.credit_usd or 0)} credited to {p.user_id}")
            return 0
        finally:
            await pool.close()

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace) -> int:
    from entrypoints.demo import run_demo

    return run_demo(keep_running=args.keep_running)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payments", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("web", help="serve IPN, API, health and metrics on $PORT").set_defaults(func=cmd_web)
    worker = sub.add_parser("worker", help="run dramatiq workers (extra args go to dramatiq, e.g. -Q poll-status)")
    worker.add_argument("dramatiq_args", nargs=argparse.REMAINDER)
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("scheduler", help="enqueue due polls").set_defaults(func=cmd_scheduler)
    sim = sub.add_parser("simulator", help="run the offline NOWPayments simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=int(os.environ.get("SIMULATOR_PORT", "8090")))
    sim.add_argument("--auto-advance", type=float, default=None, help="seconds between automatic status steps")
    sim.set_defaults(func=cmd_simulator)
    cur = sub.add_parser("currencies", help="sync or switch currencies")
    cur.add_argument("action", choices=["sync", "list", "activate", "deactivate"])
    cur.add_argument("code", nargs="?")
    cur.set_defaults(func=cmd_currencies)
    bal = sub.add_parser("balance", help="show a user's balance and history")
    bal.add_argument("user_id")
    bal.add_argument("--limit", type=int, default=20)
    bal.set_defaults(func=cmd_balance)
    wd = sub.add_parser("withdrawals", help="list, show, approve, reject or complete withdrawals")
    wd.add_argument("action", choices=["list", "show", "approve", "reject", "complete"])
    wd.add_argument("withdrawal_id", nargs="?")
    wd.add_argument("--note", help="why (required to reject)")
    wd.add_argument("--operator", help="who decides (default: $USER)")
    wd.add_argument("--tx-hash", help="transaction hash of the off-platform payout (complete)")
    wd.add_argument("--status", help="list only this status")
    wd.set_defaults(func=cmd_withdrawals)
    dep = sub.add_parser("deposits", help="list deposits held for review, or release one")
    dep.add_argument("action", choices=["held", "release", "dismiss"])
    dep.add_argument("payment_id", nargs="?")
    dep.add_argument("--note", help="why (required)")
    dep.add_argument("--operator", help="who decides (default: $USER)")
    dep.add_argument("--credit", help="USD to credit (default: the value that arrived)")
    dep.set_defaults(func=cmd_deposits)
    demo = sub.add_parser("demo", help="run the pipeline end to end against the offline simulator")
    demo.add_argument("--keep-running", action="store_true", help="leave the processes up after the demo")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
