"""Where the shared real recordings are: ``shared/data`` beside the checkout (as CI lays it
out), else the workplace copy."""
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
