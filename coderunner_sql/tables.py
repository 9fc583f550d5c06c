"""What `coderunner-sql` and its demo print about the library's results, written once.

Every function returns a rich renderable or the lines to print; neither module spells out a
table, a timestamp format or a run summary of its own. Cells are plain `Text` (never read as
markup): ids, paths and server messages are the user's text, and `[check]` in one must stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from rich.table import Table
from rich.text import Text

from coderunner_sql.migrations import RunReport, StatusReport
from coderunner_sql.records import SystemStats

__all__ = ["recorded_lines", "run_lines", "stamp", "stats_table", "status_tables", "table"]


def stamp(value: datetime | None) -> str:
    """A timestamp as the CLI and the demo show it (`-` when there is none)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None
) -> Table:
    """A rich table of `rows` under `columns`, every cell shown as plain text."""
    shown = Table(*columns, title=title, title_justify="left")
    for row in rows:
        shown.add_row(*(Text(str(cell)) for cell in row))
    return shown


def status_tables(status: StatusReport, title: str | None = None) -> tuple[Table, Table | None]:
    """`migrate status`: every migration (repeatable ones last), and the repair history
    (None when nothing was ever repaired)."""
    repaired: dict[str, int] = {}
    for r in status.repairs:
        repaired[r.id] = repaired.get(r.id, 0) + 1
    rows: list[tuple[str, str, str]] = []
    for s in status.migrations:
        times = f", repaired {repaired[s.id]}x" if s.id in repaired else ""
        rows.append((s.id, stamp(s.applied_at), f"{s.state}{times}"))
    rows += [(r.name, stamp(r.applied_at), f"repeatable, {r.state}") for r in status.repeatables]
    migrations = table(("id", "applied at (UTC)", "checksum state"), rows, title)
    if not status.repairs:
        return migrations, None
    return migrations, table(
        ("repaired at (UTC)", "id", "by", "old sha256", "new sha256"),
        (
            (
                stamp(r.repaired_at),
                r.id,
                f"{r.repaired_by} ({r.operator})" if r.operator else r.repaired_by,
                r.old_sha256[:12],
                r.new_sha256[:12],
            )
            for r in status.repairs
        ),
    )


def stats_table(stats: SystemStats, title: str | None = None) -> Table:
    """`db stats`: totals, then deployments by status."""
    return table(
        ("metric", "count"),
        [
            ("users", stats.total_users),
            ("projects", stats.total_projects),
            ("deployments", stats.total_deployments),
            *((f"  {status.value}", n) for status, n in stats.deployments_by_status.items()),
        ],
        title,
    )


def recorded_lines(report: RunReport) -> list[str]:
    """The migrations whose checksum a run recorded on first sight (applied by plain yoyo)."""
    return [
        f"recorded checksum of {mid} (applied by plain yoyo, first seen now)"
        for mid in report.recorded_on_first_sight
    ]


def run_lines(report: RunReport) -> list[str]:
    """What a `migrate` run did, after its `applied ID` lines."""
    lines = recorded_lines(report)
    if not (report.applied or report.repeatables):
        return [*lines, "schema is up to date"]
    counts = [f"{len(report.applied)} migration(s) applied"]
    if report.repeatables:
        counts.append(f"{len(report.repeatables)} repeatable migration(s) run")
    return [*lines, ", ".join(counts)]
