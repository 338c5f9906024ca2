# SPDX-License-Identifier: Apache-2.0
"""python3 -m kvfs PATH: what the kvfs daemon behind PATH can do."""
from ._client import main

main()
