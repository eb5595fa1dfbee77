"""The gpt2tui Textual app: global keys, the command palette, navigation, the run watcher, quiet libraries
and a background warm-up.

The App is the only place that pushes the main screens: screens post requests (``ui/messages.py``) and the
App acts on them, so no screen imports another. It owns the run watcher and keeps every run's history.

Importing this module must stay cheap (no torch, transformers or datasets), so the first frame is drawn at
once even over SSH; torch and transformers are imported in a thread after that frame.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from textual import events, on
from textual.app import App, CSSPathType, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen

from gpt2tui.core.quiet import quiet_environment, route_library_logs
from gpt2tui.paths import logs_dir
from gpt2tui.ui.messages import (
    ChatRequested,
    DatasetChosen,
    DecodingGridRequested,
    MonitorClosed,
    NewFinetuneRequested,
    RunEventsReceived,
    RunLaunched,
    RunOpened,
    RunsChanged,
)
from gpt2tui.ui.runs import RunBook, RunWatcher
from gpt2tui.ui.screens.home import HomeScreen

if TYPE_CHECKING:
    from gpt2tui.ui.screens.chat import ChatScreen
    from gpt2tui.ui.screens.monitor import MonitorScreen

MONITOR_MODULE = "gpt2tui.ui.screens.monitor"
"""Imported when the first monitor opens, not before the first frame (its widgets cost ~30 ms to import)."""
CHAT_MODULE = "gpt2tui.ui.screens.chat"
"""Imported when the first chat opens; until then no chat can be unsaved, and Ctrl+Q quits without importing it."""
QUIT_QUESTION = "The chat with {models} is not saved (ctrl+s in the chat saves it). Quit anyway?"
QUIT_DIALOG_ID = "quit-question"
RUN_ENDED = "Run {run} has {state}."

log = logging.getLogger(__name__)

LOG_NAME = "gpt2tui.log"
WARM_UP_DELAY = 0.5
"""Seconds between the first frame and the warm-up import, so the import never delays that frame."""


@dataclass(frozen=True)
class ShownToast:
    """A toast as it was asked for, and when it goes away: what :meth:`GPT2TUIApp.withdraw_toasts` re-posts."""

    message: str
    title: str
    severity: SeverityLevel
    markup: bool
    until: float  # time.monotonic() when its timeout ends


class GPT2TUIApp(App[None]):
    """Fine-tune GPT-2 and chat with the result, by keyboard.

    ``start_dir`` is where the dataset picker opens (default: the working directory); ``warm_up=False``
    skips the background import of torch/transformers (tests that never train use it to stay fast).
    """

    TITLE = "gpt2tui"
    SUB_TITLE = "fine-tune GPT-2 from the terminal"
    # Textual loads a screen's CSS_PATH when the screen is pushed, never for the default screen: the home
    # screen's styles are the app's.
    CSS_PATH: ClassVar[CSSPathType | None] = ["app.tcss", "screens/home.tcss"]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit (asking first if a chat is unsaved)"),
        # F1 is never text, so it works in a field and over dialogs too (a modal screen hides the App's other
        # keys): the footer shows it. ? is the key users of other TUIs try first; in a field it is text.
        Binding("f1", "show_keys", "Keys", key_display="F1", priority=True, tooltip="Show this key map"),
        Binding("question_mark", "show_keys", "Keys", show=False, tooltip="Show this key map"),
        # Not a priority: a focused text input takes the letter (Textual lets it consume printable keys), and
        # a dialog (a modal screen) hides the App's keys that are not priorities, so q never answers one.
        Binding("q", "quit_by_q", "Quit", show=False, tooltip="Quit (when no text field has focus)"),
    ]

    def __init__(
        self, start_dir: Path | None = None, warm_up: bool = True, log_file: Path | None = None
    ) -> None:
        quiet_environment()
        self.log_file = log_file or logs_dir() / LOG_NAME
        route_library_logs(self.log_file)
        super().__init__()
        self.start_dir = (start_dir or Path.cwd()).resolve()
        self.warm_up = warm_up
        self.warm_up_seconds: float | None = None
        self.warm_up_thread: threading.Thread | None = None
        self._printed: IO[str] | None = None
        self.run_book = RunBook()
        self.last_run_shown: str | None = None
        """The run whose monitor opened last: home highlights it when it comes back (its keys act on it)."""
        self.run_watcher = RunWatcher(self)
        self.quit_note: str | None = None  # printed after exit: the runs that go on training
        self.prompt_history: list[str] = []  # every chat's prompts this session, oldest first (↑ in a chat)
        self.toasts: list[ShownToast] = []  # the toasts asked for, pruned when one is withdrawn

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Screenshots go to gpt2tui's own folder: Textual's default, the Downloads folder, is often missing on
        a server, where the palette's Screenshot only said 'Failed to save screenshot'."""
        from gpt2tui.paths import screenshots_dir

        return super().deliver_screenshot(filename, path or str(screenshots_dir()), time_format)

    def get_default_screen(self) -> Screen[None]:
        return HomeScreen()

    def on_mount(self) -> None:
        # Whatever a library prints (from any thread) becomes a Print event here, never screen garbage.
        self.begin_capture_print(self, stdout=True, stderr=True)
        self.run_watcher.start()
        if self.warm_up:
            self.call_after_refresh(self.set_timer, WARM_UP_DELAY, self.warm_up_libraries)

    def on_print(self, event: events.Print) -> None:
        if self._printed is None:
            self._printed = open(self.log_file, "a", encoding="utf-8")  # noqa: SIM115 - closed on unmount
        self._printed.write(event.text)
        self._printed.flush()

    def on_unmount(self) -> None:
        self.run_watcher.stop()
        if self._printed is not None:
            self._printed.close()
            self._printed = None

    def warm_up_libraries(self) -> None:
        """Import torch and transformers while the user reads the first screen, so later steps start fast.

        A daemon thread, not a Textual thread worker: workers run in asyncio's default executor, which
        ``asyncio.run`` joins on exit, so Ctrl+Q pressed during the 2-5 s import waited for it. Nothing is
        lost by abandoning an import.
        """
        self.warm_up_thread = threading.Thread(target=self._warm_up, name="gpt2tui-warm-up", daemon=True)
        self.warm_up_thread.start()

    def _warm_up(self) -> None:
        from gpt2tui.ui.libraries import ensure_libraries

        try:
            self.warm_up_seconds = ensure_libraries()
        except Exception:  # a broken install: the screen that needs the libraries reports it
            log.exception("the background import failed")

    # ------------------------------------------------------------------------------------------ runs

    @on(RunEventsReceived)
    def run_events_received(self, message: RunEventsReceived) -> None:
        """Keep the history (a monitor opened later draws it at once) and pass the batch to open monitors."""
        self.run_book.add_events(message.run_id, message.events)
        for screen in self.monitors():
            if screen.run_id == message.run_id and screen.is_mounted:
                screen.add_events(message.events)

    @on(RunsChanged)
    def runs_changed(self, message: RunsChanged) -> None:
        previous = self.run_book.statuses
        self.run_book.set_statuses(message.statuses)
        for run_id, status in message.statuses.items():
            old = previous.get(run_id)
            if old is not None and old.live and not status.live:
                self.run_ended(run_id, status.state)
        monitors = self.monitors()
        for screen in self.screen_stack:
            if not screen.is_mounted:
                continue  # it reads the run book when it mounts
            if isinstance(screen, HomeScreen):
                screen.runs_changed(message.statuses)
            elif screen in monitors:
                screen.status_changed(message.statuses.get(screen.run_id))  # type: ignore[attr-defined]

    def monitors(self) -> list[MonitorScreen]:
        """The run monitors in the screen stack (none before the monitor module was first imported)."""
        module = sys.modules.get(MONITOR_MODULE)
        if module is None:
            return []
        return [screen for screen in self.screen_stack if isinstance(screen, module.MonitorScreen)]

    def run_ended(self, run_id: str, state: str) -> None:
        """A toast still up about the run ("keeps training", "stopping") is stale now: replaced by its end."""
        if self.withdraw_toasts(lambda toast: run_id in toast.message):
            self.notify(RUN_ENDED.format(run=run_id, state=state), markup=False)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Textual's toast, remembered so that one that went stale can be withdrawn (thread-safe, as Textual's)."""
        now = time.monotonic()
        seconds = self.NOTIFICATION_TIMEOUT if timeout is None else timeout
        shown = [toast for toast in self.toasts if toast.until > now]  # the expired ones are forgotten
        self.toasts = [*shown, ShownToast(message, title, severity, markup, now + seconds)]
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def withdraw_toasts(self, stale: Callable[[ShownToast], bool]) -> bool:
        """Take down the toasts on screen for which ``stale`` holds; False when none was up.

        Textual can only clear every toast, so the others are shown again for the rest of their time.
        """
        now = time.monotonic()
        shown = [toast for toast in self.toasts if toast.until > now]
        keep = [toast for toast in shown if not stale(toast)]
        if len(keep) == len(shown):
            self.toasts = shown
            return False
        self.clear_notifications()
        self.toasts = []
        for toast in keep:
            self.notify(
                toast.message,
                title=toast.title,
                severity=toast.severity,
                timeout=toast.until - now,
                markup=toast.markup,
            )
        return True

    def clear_notifications(self) -> None:
        super().clear_notifications()
        self.toasts = []

    def live_runs(self) -> list[str]:
        """Ids of the runs training now, read afresh (the watcher's view may be a second old)."""
        from gpt2tui.core.runs import list_runs

        return [run.id for run in list_runs(self.run_watcher.root) if run.status().live]

    def unsaved_chats(self) -> list[ChatScreen]:
        """The chat screens in the stack whose transcript is not saved (none before a chat was first opened)."""
        module = sys.modules.get(CHAT_MODULE)
        if module is None:
            return []
        return [s for s in self.screen_stack if isinstance(s, module.ChatScreen) and s.unsaved]

    async def action_quit(self) -> None:
        """Quit at once, unless a chat's transcript is not saved: then ask first (its question is only up once)."""
        if self.screen.id == QUIT_DIALOG_ID:
            return
        unsaved = self.unsaved_chats()
        if not unsaved:
            self.quit_now()
            return
        from gpt2tui.ui.widgets.dialogs import ConfirmDialog

        models = " and ".join(dict.fromkeys(chat.model_label for chat in unsaved))
        dialog = ConfirmDialog(
            QUIT_QUESTION.format(models=models), yes_label="Quit", no_label="Stay", id=QUIT_DIALOG_ID
        )
        self.push_screen(dialog, self._quit_if_confirmed)

    def _quit_if_confirmed(self, confirmed: bool | None) -> None:
        if confirmed:
            self.quit_now()

    def quit_now(self) -> None:
        """Quit: runs are their own processes and go on; the message after exit says how to see them."""
        live = self.live_runs()
        if live:
            runs = ", ".join(live)
            self.quit_note = (
                f"gpt2tui: {len(live)} run{'s' if len(live) > 1 else ''} still training ({runs}); "
                f"`gpt2tui runs attach {live[0]}` or reopening gpt2tui shows {'them' if len(live) > 1 else 'it'}."
            )
        self.exit(message=self.quit_note)

    # ------------------------------------------------------------------------------------------ keys

    def action_show_keys(self) -> None:
        """The key map of the screen in front (read from its bindings now); over the key map, close it."""
        from gpt2tui.ui.widgets.key_map import KeyMapDialog, key_map  # here: not needed for the first frame

        if isinstance(self.screen, KeyMapDialog):
            self.screen.dismiss(None)
            return
        self.push_screen(KeyMapDialog(key_map(self.screen)))

    def action_quit_by_q(self) -> None:
        """q does what ctrl+q does on that screen (a screen may ask first): the same key, sent again."""
        self.simulate_key("ctrl+q")

    # ------------------------------------------------------------------------------------------ navigation

    async def action_go_home(self) -> None:
        """Back to the home screen; a chat on top leaves the way its Escape does (it may ask first)."""
        from gpt2tui.ui.screens.chat import ChatScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            screen = self.screen
            if isinstance(screen, ChatScreen):
                if screen.active is not None:
                    self.notify(
                        "A reply is being generated; stop it (escape) before leaving the chat.",
                        severity="warning",
                    )
                    return
                await screen.run_action("stop")  # the chat's Escape: leaves, or asks first if unsaved
                if screen in self.screen_stack:  # it stayed (its question is up): the answer decides
                    return
            else:
                self.pop_screen()

    def action_new_finetune(self) -> None:
        from gpt2tui.ui.screens.dataset import DatasetScreen

        self.push_screen(DatasetScreen(self.start_dir))

    def action_chat_with(self, name: str) -> None:
        """Chat is available while runs train: each run is another process.

        Asked for from a chat (its palette), the new chat replaces that one instead of opening over it: every
        chat left underneath kept its model loaded in its own process. An unsaved chat asks first.
        """
        from gpt2tui.ui.screens.chat import LEAVE_QUESTION, ChatScreen
        from gpt2tui.ui.widgets.dialogs import ConfirmDialog

        current = self.screen
        if not isinstance(current, ChatScreen):
            self.push_screen(ChatScreen(name))
            return

        def replace(leave: bool | None = True) -> None:
            if leave and self.screen is current:
                self.switch_screen(ChatScreen(name))

        if current.unsaved or current.active is not None:
            self.push_screen(ConfirmDialog(LEAVE_QUESTION, yes_label="Leave", no_label="Stay"), replace)
        else:
            replace()

    def take_last_run_shown(self) -> str | None:
        """The run whose monitor opened since the last call (home asks once, when it comes back), or None."""
        run_id, self.last_run_shown = self.last_run_shown, None
        return run_id

    def open_run(self, run_id: str) -> None:
        """The monitor of ``run_id`` on top (it shows the run's whole history, whoever started it)."""
        from gpt2tui.ui.screens.monitor import MonitorScreen

        if isinstance(self.screen, MonitorScreen) and self.screen.run_id == run_id:
            return
        self.last_run_shown = run_id
        self.push_screen(MonitorScreen(run_id))

    @on(NewFinetuneRequested)
    def new_finetune_requested(self) -> None:
        self.action_new_finetune()

    @on(DatasetChosen)
    def dataset_chosen(self, message: DatasetChosen) -> None:
        from gpt2tui.ui.screens.setup import SetupScreen

        self.push_screen(SetupScreen(message.spec, message.summary, message.block_size))

    @on(RunLaunched)
    def run_launched(self, message: RunLaunched) -> None:
        self.run_watcher.poll_now()
        self.open_run(message.run_id)

    @on(RunOpened)
    def run_opened(self, message: RunOpened) -> None:
        self.open_run(message.run_id)

    @on(ChatRequested)
    def chat_requested(self, message: ChatRequested) -> None:
        self.action_chat_with(message.name)

    @on(DecodingGridRequested)
    def decoding_grid_requested(self, message: DecodingGridRequested) -> None:
        from gpt2tui.ui.screens.grid import GridScreen

        self.push_screen(GridScreen(message.model, message.prompt, message.settings, model=message.loaded))

    @on(MonitorClosed)
    async def monitor_closed(self, message: MonitorClosed) -> None:
        """After a failed run started from the setup, back to that setup to change it; otherwise home."""
        from gpt2tui.ui.screens.setup import SetupScreen

        index = len(self.screen_stack) - 1
        below = self.screen_stack[index - 1] if index >= 1 else None
        if message.state == "failed" and isinstance(below, SetupScreen):
            self.pop_screen()
            return
        await self.action_go_home()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Every screen and every key of the current screen, plus a chat entry per stored model.

        Over a dialog only the base commands (quit, theme, ...) are offered: a screen pushed from the palette
        would land on top of the unanswered question.
        """
        if screen.is_modal:
            yield from (command for command in super().get_system_commands(screen) if command.title != "Keys")
            return
        commands = [
            # Textual's "Keys" opens its help panel; this app's key map replaces it.
            *(command for command in super().get_system_commands(screen) if command.title != "Keys"),
            SystemCommand("Keys", "The keys of this screen and of the app (? or F1)", self.action_show_keys),
            SystemCommand("Models", "Show the stored models (home screen)", self.action_go_home),
            SystemCommand(
                "New fine-tune", "Pick a dataset, set up and start a fine-tune", self.action_new_finetune
            ),
        ]
        # A screen with its own palette provider (chat) already lists its keys, with fuller names. The focused
        # widget's keys that act on the screen (the home screen's tables) are the screen's keys too.
        has_provider = bool(getattr(type(screen), "COMMANDS", None))
        own_keys = [] if has_provider else list(getattr(type(screen), "BINDINGS", []))
        focused = screen.focused
        if focused is not None and not has_provider:
            own_keys += [
                b
                for b in getattr(type(focused), "BINDINGS", [])
                if isinstance(b, Binding) and b.action.startswith("screen.")
            ]
        for binding in own_keys:
            action = binding.action.removeprefix("screen.") if isinstance(binding, Binding) else ""
            if isinstance(binding, Binding) and binding.description and screen.check_action(action, ()):
                key = binding.key.split(",")[0]
                help_text = f"key {key} · {screen.sub_title or type(screen).__name__}"
                commands.append(
                    SystemCommand(binding.description, help_text, partial(screen.run_action, action))
                )
        from gpt2tui.core.store import ModelStore

        for info in ModelStore().list():
            help_text = f"Open the chat screen for {info.name}"
            commands.append(
                SystemCommand(
                    f"Chat with {info.name}", help_text, partial(self.action_chat_with, info.name), False
                )
            )
        seen: set[str] = set()
        for command in commands:
            if command.title not in seen:
                seen.add(command.title)
                yield command


@contextmanager
def terminal_output_to(log_file: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``log_file`` while the app runs.

    Textual already captures Python-level ``print``; this catches what C and Rust code writes straight to the
    descriptors (which would otherwise scribble over the screen). Textual draws on ``sys.__stderr__`` and
    reads the size from ``sys.__stdout__``, so those become duplicates of the terminal before the move.
    """
    streams = (sys.__stdout__, sys.__stderr__)
    if not all(stream is not None and stream.isatty() for stream in streams):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    out, err = (
        os.fdopen(os.dup(fd), "w", encoding=sys.__stderr__.encoding, errors="replace") for fd in (1, 2)
    )
    original = sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr
    log_fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr = out, err, out, err
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        yield
    finally:
        out.flush()
        err.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(log_fd)
        sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr = original
        out.close()
        err.close()


def run() -> None:
    """Build and run the app (the ``gpt2tui`` command with no arguments).

    Work the app may abandon (the background import, loading a model, a reply being generated) runs in
    daemon threads, so nothing joins it on exit. Once the terminal is restored, if such a thread is still
    running, the process ends with ``os._exit``: an interpreter shutting down around a thread that is inside
    ``import torch`` or a torch kernel can wait on its import lock or abort; there is nothing left to save.
    """
    quiet_environment()
    app = GPT2TUIApp()
    with terminal_output_to(app.log_file):
        app.run()
    if any(thread.is_alive() for thread in threading.enumerate() if thread is not threading.main_thread()):
        exit_now(app.return_code or 0)


def exit_now(code: int) -> None:
    """End the process at once, after flushing what Python buffers (stdio, log handlers)."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed or broken stream: nothing more to save
            stream.flush()
    logging.shutdown()
    os._exit(code)
