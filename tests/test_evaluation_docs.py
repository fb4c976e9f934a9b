"""docs/evaluation.md's evaluation snippet runs as it is on the demo's outputs, as a user would run it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"


def test_the_evaluation_snippet_runs_on_the_demo(demo_data):
    code = "\n".join(re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S))
    assert "retrieval_dataset" in code and "prompt_tokens" in code
    result = subprocess.run([sys.executable, "-c", code], cwd=demo_data.parent, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "flickr30k test: {'i2t_r1'" in result.stdout and "imagenet zero-shot top-1:" in result.stdout
