"""Load-generator child processes: a command loop over a pipe around one asyncio event loop.

The parent starts receiver and sender processes with the ``spawn`` start method and drives them
step by step (``connect``, ``start``/``run``, ``stop``, ``close``). Children ignore SIGINT (Ctrl-C
is the parent's to handle), die with the parent (parent-death signal) and leave when the pipe
closes, so an interrupted bench leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import multiprocessing as mp
import os
import resource
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Protocol

PROGRESS_INTERVAL_S = 0.1
DEBUG = bool(os.environ.get("BENCH_DEBUG"))


class Handler(Protocol):
    def progress(self) -> int: ...

    async def handle(self, command: tuple[Any, ...]) -> object: ...


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit (and the hard one when privileged); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = hard if hard == resource.RLIM_INFINITY or hard < wanted else wanted
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(role: str, conn: Connection, spec: Any, counter: Synchronized[int]) -> None:
    """Entry point of a spawned child (must stay importable at module level)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1)
    from echonats.devstack.stack import set_parent_death_signal

    set_parent_death_signal()
    raise_fd_limit()
    factory: Callable[[Any], Handler]
    if role == "receiver":
        from bench.receiver import ReceiverCore

        factory = ReceiverCore
    else:
        from bench.sender import SenderCore

        factory = SenderCore

    async def main() -> None:
        await _serve(factory(spec), conn, counter)

    _run(main)


def _run(main: Callable[[], Awaitable[None]]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())  # type: ignore[arg-type]
    else:
        uvloop.run(main())  # type: ignore[arg-type]


async def _serve(handler: Handler, conn: Connection, counter: Synchronized[int]) -> None:
    # The pipe stays blocking and is read by a thread: registering it with the event loop would make
    # it non-blocking, and a large reply would then be written only in part.
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def read_commands() -> None:
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):
                command = ("close",)
            loop.call_soon_threadsafe(inbox.put_nowait, command)
            if command[0] == "close":
                return

    threading.Thread(target=read_commands, name="commands", daemon=True).start()

    async def pump() -> None:
        while True:
            counter.value = handler.progress()
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    pumping = asyncio.create_task(pump())
    try:
        while True:
            command = await inbox.get()
            if DEBUG:
                print(f"[child {os.getpid()}] got {command[0]}", file=sys.stderr, flush=True)
            try:
                reply = await handler.handle(command)
            except Exception as exc:  # reported to the parent, which stops the bench
                reply = ("error", f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                await asyncio.to_thread(conn.send, reply)
            if DEBUG:
                print(f"[child {os.getpid()}] replied {command[0]}", file=sys.stderr, flush=True)
            if command[0] == "close":
                return
    finally:
        pumping.cancel()


class ChildProcess:
    """Parent-side handle: a spawned child, its pipe and its progress counter."""

    def __init__(self, role: str, spec: Any, name: str) -> None:
        ctx = mp.get_context("spawn")
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.counter: Synchronized[int] = ctx.Value("q", 0, lock=False)  # type: ignore[assignment]
        self.process = ctx.Process(
            target=child_main, args=(role, child_conn, spec, self.counter), name=name, daemon=True
        )
        self.process.start()
        child_conn.close()

    async def call(self, *command: Any, timeout_s: float = 300.0) -> Any:
        """Send a command and wait for its reply (one call at a time per child)."""
        self.conn.send(command)
        reply = await asyncio.to_thread(self._recv, timeout_s)
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise RuntimeError(f"{self.name}: {reply[1]}")
        return reply

    def _recv(self, timeout_s: float) -> Any:
        if not self.conn.poll(timeout_s):
            raise TimeoutError(f"{self.name} did not answer {timeout_s:.0f}s")
        return self.conn.recv()

    def stop(self) -> None:
        """Wait for the child to leave (after ``close``), else terminate it; then close the pipe.

        The pipe is closed last: a thread may still be waiting on it, and the child's exit is what
        ends that wait (EOF)."""
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        with contextlib.suppress(OSError):
            self.conn.close()


async def close_all(children: list[ChildProcess]) -> None:
    """Ask every child to close its sockets, then make sure each is gone (also when cancelled)."""
    try:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(
                asyncio.gather(*(c.call("close", timeout_s=10) for c in children), return_exceptions=True), 15
            )
    finally:
        for child in children:
            child.stop()
