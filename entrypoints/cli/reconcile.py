"""`payments reconcile`: does the ledger agree with itself and with the payments and withdrawals?"""

from __future__ import annotations

import click

from entrypoints.cli.common import emit_json, emit_table, json_option, query
from entrypoints.errors import EXIT_REFUSED
from storage.reconcile import CHECK_NAMES, find_differences


@click.command()
@json_option
def reconcile(as_json: bool) -> int:
    """Check the ledger against its invariants and against what it pays for; exit 1 on any difference.

    \b
    Checked, in one consistent snapshot:
      - every ledger transaction has two or more entries summing to zero, and all entries sum to zero;
      - every user balance equals the sum of its entries, and none is negative;
      - every settled payment has its one deposit posting, crediting what the payment says,
        and no other payment (nor anything else) has one;
      - every withdrawal's hold was posted for its amount; every completed one was posted once,
        every rejected, cancelled or failed one released once, and no open one either.

    \b
    Examples:
      payments reconcile
      payments reconcile --json | jq '.differences[].check'
    """
    differences = query(find_differences)
    if as_json:
        emit_json({"checks": list(CHECK_NAMES), "differences": differences})
    elif differences:
        emit_table(("check", "subject", "difference"), [(d.check, d.subject, d.detail) for d in differences], empty="")
    else:
        click.echo(f"no differences ({len(CHECK_NAMES)} checks)")
    if differences:
        click.echo(f"{len(differences)} difference(s) found", err=True)
        return EXIT_REFUSED
    return 0
