"""The terminal UI driven by Textual's pilot (``App.run_test``): windows of a real watcher
show as template counts with sparklines, anomalies with a detail pane, keys move around."""

import asyncio
from pathlib import Path

from textual.widgets import DataTable, Sparkline, Static

from contracts.log_watch import LogWatchWindow, WatchExplanation
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import FileTail
from telemetry.logs.watch.tui import LogWatchApp, sparkline
from telemetry.logs.watch.watcher import Watcher
from tests.telemetry.logs.watch.conftest import BURST_TEMPLATE, append, error_burst, normal_traffic


def watched_windows(tmp_path: Path) -> list[LogWatchWindow]:
    """Five windows of a real file: usual traffic, then a new error burst (explained)."""
    log = tmp_path / "app.log"
    log.write_text("")
    watcher = Watcher(FileTail(log), LogWatchSettings())
    windows = []
    for seed in range(4):
        append(log, normal_traffic(seed))
        watcher.feed(watcher.source.poll(0))
        windows.append(watcher.close_window())
    append(log, normal_traffic(4) + error_burst(5))
    watcher.feed(watcher.source.poll(0))
    burst = watcher.close_window()
    explanation = WatchExplanation(
        status="explained",
        root_cause="The database ran out of connection slots.",
        actions=["Raise max_connections"],
    )
    windows.append(burst.model_copy(update={"explanation": explanation}))
    return windows


def cell_texts(table: DataTable[object], column: int) -> list[str]:
    return [str(table.get_row_at(row)[column]) for row in range(table.row_count)]


def test_the_ui_shows_templates_and_an_injected_anomaly(tmp_path: Path) -> None:
    windows = watched_windows(tmp_path)

    async def drive() -> None:
        app = LogWatchApp()
        async with app.run_test(size=(160, 40)) as pilot:
            for window in windows:
                app.add_window(window)
            await pilot.pause()
            templates = app.query_one("#templates", DataTable)
            texts = cell_texts(templates, 5)
            assert texts[0] == BURST_TEMPLATE  # most frequent in the last window
            assert any(text.startswith("GET <PATH> served in <DURATION>") for text in texts)
            assert cell_texts(templates, 1)[0] == "25"
            # A sparkline per template: the burst template only in the last window.
            assert cell_texts(templates, 4)[0] == "    █"
            status = str(app.query_one("#status", Static).content)
            assert "window 4" in status
            assert "2 anomalies in the window" in status

            anomalies = app.query_one("#anomalies", DataTable)
            assert anomalies.row_count == 2
            assert {row for row in cell_texts(anomalies, 2)} == {"new_template", "error_burst"}
            assert set(cell_texts(anomalies, 5)) == {BURST_TEMPLATE}
            detail = str(app.query_one("#detail", Static).content)
            assert "new_template" in detail
            assert "refused: too many clients already" in detail
            assert "The database ran out of connection slots." in detail

            # Keyboard: a focuses the anomalies, down moves to the next one.
            await pilot.press("a")
            assert app.focused is anomalies
            await pilot.press("down")
            assert anomalies.cursor_row == 1
            assert "error_burst" in str(app.query_one("#detail", Static).content)
            # t goes back to the templates; the trend follows the highlighted template.
            await pilot.press("t")
            assert app.focused is templates
            templates.move_cursor(row=0)  # the selection follows a template: start at the top
            await pilot.press("down")
            await pilot.pause()
            trend = app.query_one("#trend", Sparkline)
            data = list(trend.data or [])
            assert len(data) == 5  # one count per window
            assert data[1:] == [20, 20, 20, 20]  # window 0 learnt (Drain split a few lines off)
            await pilot.press("q")

    asyncio.run(drive())


def test_the_ui_runs_a_watcher_on_its_thread(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(normal_traffic(0))
    watcher = Watcher(FileTail(log, from_start=True), LogWatchSettings(window_s=0.2))

    async def drive() -> None:
        app = LogWatchApp(watcher, max_windows=2)
        async with app.run_test(size=(160, 40)) as pilot:
            templates = app.query_one("#templates", DataTable)
            for _ in range(200):
                if len(app.windows) >= 2:
                    break
                await pilot.pause(0.05)
            assert len(app.windows) == 2
            assert templates.row_count >= 2
            assert app.sub_title == str(log)
        app.stop_watcher(timeout=10)

    asyncio.run(drive())


def test_sparkline_scales_to_the_largest_count() -> None:
    assert sparkline([0, 1, 2, 4, 8]) == " ▂▃▅█"
    assert sparkline([0, 0]) == "  "
