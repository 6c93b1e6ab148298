"""Ask real Linux: a typed wrapper around ``../shared/tools/linux-oracle/run_guest.sh``.

One call boots Debian's 6.1 kernel (real libnvdimm, ndctl 76.1) under QEMU with one image
attached as an NVDIMM, runs a shell script in the guest and returns what it printed. A boot
costs a few seconds, so checks are batched: :func:`batch_script` turns a list of commands
into one script whose output :func:`parse_sections` splits back into one
:class:`Section` per command, each with its exit status and the JSON ndctl printed::

    result = run_batch(image, ["ndctl list -N -v", "ndctl read-labels -j nmem0"])
    namespaces = result.section("ndctl list -N -v").json

The runner is found through ``NVDIMM_LINUX_ORACLE``; tests call :func:`require_runner`,
which skips with :data:`SKIP_REASON` when it is unset.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: A decoded JSON value (ndctl output): dict, list, str, int, float, bool or None.
Json = Any

ENV_VAR = "NVDIMM_LINUX_ORACLE"
SKIP_REASON = (
    f"real-Linux checks are off: {ENV_VAR} is not set. To enable them run "
    "../shared/tools/linux-oracle/setup.sh (as root, needs Debian's archive) and "
    f"export {ENV_VAR}=/path/to/run_guest.sh (or run: "
    f'export {ENV_VAR}="$(.ci/oracle.sh)")'
)

#: Seconds the guest may run (run_guest.sh ``-t``); a boot alone takes about 4.
DEFAULT_TIMEOUT = 240
#: Extra seconds the host waits for run_guest.sh beyond the guest's timeout.
HOST_GRACE = 30
#: run_guest.sh exit status when the guest timed out / could not boot.
RC_TIMEOUT = 124
RC_NO_BOOT = 125

#: Line a batch script prints after each command: ``ORACLE-RC=<exit status>``.
RC_MARKER = "ORACLE-RC="
#: Prefix of a command header line, as ``sh -x`` prints it and as batch scripts echo it.
HEADER = "+ "


class OracleUnavailable(RuntimeError):
    """``NVDIMM_LINUX_ORACLE`` is set but does not name a usable runner."""


class OracleError(RuntimeError):
    """The guest did not boot, or did not finish in time: no answer from Linux."""

    def __init__(self, message: str, result: GuestResult) -> None:
        super().__init__(f"{message}\n--- run_guest.sh stderr ---\n{result.stderr.strip()}")
        self.result = result


# --------------------------------------------------------------------------- locating


def find_runner(environ: Mapping[str, str] | None = None) -> Path | None:
    """The runner named by ``NVDIMM_LINUX_ORACLE``, or None when the variable is unset.

    Raises :class:`OracleUnavailable` when it is set to something that is not an
    executable file: a misconfigured CI should fail, not silently skip.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise OracleUnavailable(f"{ENV_VAR}={value}: no such file (expected run_guest.sh)")
    if not os.access(path, os.X_OK):
        raise OracleUnavailable(f"{ENV_VAR}={value}: not executable")
    return path.resolve()


def require_runner() -> Path:
    """The runner, or skip the calling test with :data:`SKIP_REASON`."""
    try:
        runner = find_runner()
    except OracleUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    if runner is None:
        pytest.skip(SKIP_REASON)
    return runner


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Section:
    """One command the guest ran and what it printed (stdout and stderr, interleaved).

    ``rc`` is the command's exit status when the script reported it (batch scripts do;
    ``sh -x`` traces such as the golden ``ndctl.txt`` files do not).
    """

    command: str
    output: str
    rc: int | None = None

    @property
    def argv(self) -> list[str]:
        """The command split like the shell would (``sh -x`` quotes arguments)."""
        try:
            return shlex.split(self.command)
        except ValueError:
            return self.command.split()

    @property
    def json_values(self) -> list[Json]:
        """Every JSON document the command printed, in order."""
        return split_json(self.output)[0]

    @property
    def json(self) -> Json:
        """The JSON document the command printed; None when it printed none.

        ndctl prints nothing at all when a listing is empty, so None means "no objects".
        Raises ValueError when the command printed several documents.
        """
        values = self.json_values
        if len(values) > 1:
            raise ValueError(f"{self.command!r} printed {len(values)} JSON documents")
        return values[0] if values else None

    @property
    def text(self) -> str:
        """What the command printed besides JSON (e.g. ``read 1 nmem``), stripped."""
        return split_json(self.output)[1].strip()

    def matches(self, command: str) -> bool:
        """Whether this is ``command``: the same words, however the shell quoted them."""
        if self.command == command:
            return True
        try:
            return self.argv == shlex.split(command)
        except ValueError:
            return False


def split_json(text: str) -> tuple[list[Json], str]:
    """Split command output into the JSON documents in it and the remaining text.

    A document starts at a line beginning with ``{`` or ``[`` (ndctl and daxctl print
    pretty JSON from column 0) and ends where the JSON value ends; lines that start that
    way but are not JSON stay text.

    >>> split_json('{\\n  "dev":"nmem0"\\n}\\nread 1 nmem\\n')
    ([{'dev': 'nmem0'}], 'read 1 nmem\\n')
    """
    decoder = json.JSONDecoder()
    values: list[Json] = []
    rest: list[str] = []
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end + 1
        if text[pos] in "{[":
            try:
                value, stop = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                pass
            else:
                values.append(value)
                # drop the newline that ends the document
                nl = text.find("\n", stop)
                tail = text[stop:] if nl < 0 else text[stop : nl + 1]
                if tail.strip():
                    rest.append(tail.lstrip())
                pos = len(text) if nl < 0 else nl + 1
                continue
        rest.append(text[pos:end])
        pos = end
    return values, "".join(rest)


def parse_sections(output: str) -> list[Section]:
    """Split guest output into one :class:`Section` per command.

    Two shapes are understood:

    - batch output (from :func:`batch_script`): ``+ CMD`` header, output, ``ORACLE-RC=N``;
      a section runs from its header to its marker, so ``+`` lines inside it are output;
    - ``sh -x`` traces (the golden ``ndctl.txt`` files): every ``+ CMD`` line starts a new
      section. In a traced pipeline each stage gets its own header, in the order the
      shell forked them, and the pipeline's output lands after the last of them.

    Text before the first header becomes a section whose command is ``""``.
    """
    lines = output.splitlines(keepends=True)
    batch = any(_rc_split(line)[1] is not None for line in lines)
    sections: list[Section] = []
    command: str | None = None
    body: list[str] = []
    open_ = False  # batch mode: inside a header..marker pair

    def close(rc: int | None) -> None:
        nonlocal command, body
        text = "".join(body)
        if command is not None or text.strip():
            sections.append(Section(command or "", text, rc))
        command, body = None, []

    for line in lines:
        if batch:
            head, rc = _rc_split(line)
            if rc is not None and open_:
                body.append(head)
                close(rc)
                open_ = False
                continue
            if not open_ and line.startswith(HEADER):
                close(None)
                command, open_ = line[len(HEADER) :].rstrip("\n"), True
                continue
            body.append(line)
        else:
            if line.startswith(HEADER):
                close(None)
                command = line[len(HEADER) :].rstrip("\n")
                continue
            body.append(line)
    close(None)
    return sections


def _rc_split(line: str) -> tuple[str, int | None]:
    """``"abcORACLE-RC=3\\n"`` -> ``("abc", 3)``; lines without the marker -> (line, None)."""
    stripped = line.rstrip("\n")
    i = stripped.rfind(RC_MARKER)
    if i < 0:
        return line, None
    digits = stripped[i + len(RC_MARKER) :]
    if not digits.isdigit():
        return line, None
    return stripped[:i], int(digits)


def batch_script(commands: Iterable[str], *, preamble: str = "") -> str:
    """A guest script that runs ``commands`` one after the other, whatever each returns.

    Each command is announced by a ``+ CMD`` line and followed by ``ORACLE-RC=N``, so
    :func:`parse_sections` returns one section per command with its exit status.
    Commands are single lines (use ``;``, ``&&``, ``|``); stderr is merged into stdout.
    """
    out = [preamble.rstrip("\n")] if preamble.strip() else []
    for cmd in commands:
        if "\n" in cmd or not cmd.strip():
            raise ValueError(f"batch commands must be single non-empty lines: {cmd!r}")
        out.append(f"printf '+ %s\\n' {shlex.quote(cmd)}")
        out.append(f"{{ {cmd}\n}} 2>&1")
        out.append(f'echo "{RC_MARKER}$?"')
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class GuestResult:
    """What one boot printed. ``rc`` is the exit status of the guest's script."""

    stdout: str
    stderr: str
    rc: int
    elapsed: float
    argv: tuple[str, ...]
    script: str
    exported: bytes | None = None

    @property
    def sections(self) -> list[Section]:
        return parse_sections(self.stdout)

    def section(self, command: str) -> Section:
        """The (first) section of ``command``; KeyError lists what did run."""
        for s in self.sections:
            if s.matches(command):
                return s
        ran = "\n  ".join(s.command for s in self.sections)
        raise KeyError(f"{command!r} not in guest output; commands seen:\n  {ran}")

    def failed(self) -> list[Section]:
        """Sections whose command reported a non-zero exit status."""
        return [s for s in self.sections if s.rc not in (None, 0)]

    def describe(self) -> str:
        """The invocation and full output, for failure messages."""
        return (
            f"$ {shlex.join(self.argv)}  (rc={self.rc}, {self.elapsed:.1f}s)\n"
            f"--- script ---\n{self.script}--- stdout ---\n{self.stdout}"
            f"--- stderr ---\n{self.stderr}"
        )


def run(
    image: Path,
    script: str,
    *,
    label_size: str = "128K",
    read_only: bool = False,
    files: Sequence[Path] = (),
    timeout: int = DEFAULT_TIMEOUT,
    create_size: str | None = None,
    export: bool = False,
    extra_args: Sequence[str] = (),
    runner: Path | None = None,
) -> GuestResult:
    """Boot Linux with ``image`` as the NVDIMM and run ``script`` (sh) in the guest.

    ``label_size`` is the DIMM's label area (``"0"``: label-less DIMM); ``read_only``
    discards the guest's writes; ``files`` appear in the guest as ``/in/NAME``;
    ``export`` collects the bytes the guest sent with ``export_file F``. ``runner``
    defaults to :func:`require_runner` (so a test calling this skips without an oracle).

    Raises :class:`OracleError` when the guest did not boot or timed out; a failing
    script is not an error (see ``rc`` and :meth:`GuestResult.failed`).
    """
    runner = require_runner() if runner is None else runner
    argv: list[str] = [str(runner), "-L", label_size, "-t", str(timeout)]
    if read_only:
        argv.append("-r")
    if create_size is not None:
        argv += ["-s", create_size]
    for f in files:
        argv += ["-f", str(f)]
    with tempfile.TemporaryDirectory(prefix="nvdimm-oracle-") as tmp:
        export_path = Path(tmp) / "export.bin"
        if export:
            argv += ["-x", str(export_path)]
        argv += [*extra_args, str(image), "-"]
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                input=script,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout + HOST_GRACE,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            result = GuestResult(
                stdout=_text(exc.stdout),
                stderr=_text(exc.stderr),
                rc=RC_TIMEOUT,
                elapsed=time.monotonic() - start,
                argv=tuple(argv),
                script=script,
            )
            message = f"run_guest.sh did not return in {timeout + HOST_GRACE}s"
            raise OracleError(message, result) from exc
        result = GuestResult(
            stdout=proc.stdout,
            stderr=proc.stderr,
            rc=proc.returncode,
            elapsed=time.monotonic() - start,
            argv=tuple(argv),
            script=script,
            exported=export_path.read_bytes() if export and export_path.exists() else None,
        )
    if "run_guest: TIMEOUT" in result.stderr:
        raise OracleError(f"guest timed out after {timeout}s", result)
    if result.rc == RC_NO_BOOT and "run_guest:" in result.stderr:
        raise OracleError("guest did not boot (run setup.sh?)", result)
    return result


def run_batch(image: Path, commands: Iterable[str], **kwargs: Any) -> GuestResult:
    """:func:`run` of :func:`batch_script` ``(commands)``; same keyword arguments."""
    return run(image, batch_script(commands), **kwargs)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
