"""The README's quickstart, run as written against a real `echonats run`, so it cannot drift.

Blocks after a `<!-- quickstart -->` marker run in order as one bash script (`set -euo pipefail`);
a block after `<!-- quickstart: NAME -->` is saved as the file NAME first, as the README asks the
reader to. The script runs in a scratch folder whose `.venv` is the checkout's, as if it were the
checkout's root; only BASE (the gateway's URL, which the README lets one override) differs.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from tests.integration.running import echonats_run

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- quickstart(?:: (?P<name>[\w.-]+))? -->\n```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)


def quickstart(readme: str) -> tuple[str, dict[str, str]]:
    """The quickstart's shell script and the files it expects, from the README text."""
    script: list[str] = []
    files: dict[str, str] = {}
    for block in BLOCK.finditer(readme):
        if block["name"]:
            files[block["name"]] = block["code"]
        else:
            assert block["lang"] == "bash", block["lang"]
            script.append(block["code"])
    return "\n".join(script), files


def test_the_extractor_finds_the_blocks() -> None:
    sample = (
        "x\n<!-- quickstart -->\n```bash\necho 1\n```\n<!-- quickstart: a.py -->\n```python\nprint(2)\n```\n"
    )
    assert quickstart(sample) == ("echo 1\n", {"a.py": "print(2)\n"})


async def test_the_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    script, files = quickstart((ROOT / "README.md").read_text())
    assert "POST /admin/tenants" in script
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "quickstart.sh").write_text("set -euo pipefail\n" + script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHONATS_")}
    async with echonats_run() as stack:
        result = await asyncio.to_thread(
            subprocess.run,
            ["bash", "quickstart.sh"],
            cwd=tmp_path,
            env={**env, "BASE": stack.base},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    posted, history = (line for line in result.stdout.splitlines() if line.startswith("{"))
    assert '"body":"Hello, Bob!"' in posted
    assert '"items":[{' in history
    assert '"body":"Hello, Bob!"' in history
    assert "hello.py" in files
    stored = re.search(r"^stored as message (\d+)$", result.stdout, re.MULTILINE)
    assert stored, result.stdout
    assert int(stored.group(1)) > 1  # after Ann's REST message
    assert "Bob got 'Hi Bob, live this time' from Ann" in result.stdout
