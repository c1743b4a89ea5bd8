"""`payments`: one command for every process and operator task (click; one module per group).

Errors: a declared error (entrypoints/errors.py) prints one line on stderr and exits with the table's
exit code; a wrong command line exits 2 with click's usage message; never a traceback for either.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from entrypoints.cli.balance import balance
from entrypoints.cli.currencies import currencies
from entrypoints.cli.deposits import deposits
from entrypoints.cli.dlq import dlq
from entrypoints.cli.events import events
from entrypoints.cli.processes import COMMANDS as PROCESS_COMMANDS
from entrypoints.cli.reconcile import reconcile
from entrypoints.cli.schema import schema
from entrypoints.cli.withdrawals import withdrawals
from entrypoints.errors import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, outcome_for
from settings import SettingsError

_LABELS = {EXIT_REFUSED: "refused", EXIT_NOT_FOUND: "not found", EXIT_UNAVAILABLE: "unavailable"}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """Crypto deposits, balances and withdrawals over NOWPayments.

    Configuration comes from the environment (see the README's Settings). Data goes to stdout
    (--json for scripts), log lines and errors to stderr. Exit codes: 0 ok, 1 refused or a
    difference found, 2 wrong usage or configuration, 3 a service did not answer, 4 not found.

    \b
    Examples:
      payments migrate
      payments withdrawals approve WD_20250114123456_abc12345 --note "KYC checked"
      payments dlq list create-payment --json
      payments schema messages
    """


for command in (*PROCESS_COMMANDS, currencies, balance, withdrawals, deposits, dlq, reconcile, schema, events):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="payments", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_REFUSED
    except SettingsError as exc:
        click.echo(exc.code, err=True)
        return EXIT_USAGE
    except Exception as exc:
        outcome = outcome_for(exc)
        if outcome is None:
            raise  # not a declared error: a bug, shown with its traceback
        click.echo(f"{_LABELS.get(outcome.exit_code, 'error')}: {exc}", err=True)
        return outcome.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
