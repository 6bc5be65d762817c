"""The vision path stays free of AWS: it runs the same in Lambda, the Batch job and on a laptop."""

from __future__ import annotations

import subprocess
import sys


def test_vision_path_does_not_import_boto3_or_pynamodb() -> None:
    code = (
        "import sys\n"
        "import facegate.vision, facegate.models, facegate.evaluation\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'boto3', 'botocore', 'pynamodb'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
