"""Run the README's quick tour (its first ```python block) as a new user would paste it."""

import re
import sys
from pathlib import Path

readme = Path(sys.argv[1]).read_text(encoding="utf-8")
tour = readme.split("## Quick tour", 1)[1]
code = re.search(r"```python\n(.*?)```", tour, re.S)
assert code, "README.md has no ```python block under '## Quick tour'"
exec(compile(code.group(1), "README.md quick tour", "exec"), {"__name__": "__main__"})
