# SPDX-License-Identifier: Apache-2.0
"""kvfs_client: the old name of the kvfs package's GPU client (kvfs._client),
kept so that code written against it goes on working: ``import kvfs_client
as kv`` gives the same functions as ``import kvfs as kv``."""
import sys as _sys

from kvfs import _client as _impl
from kvfs._client import *  # noqa: F401,F403

if __name__ == "__main__":
    _impl.main()
else:
    # One module under both names: constants and caches are shared.
    _sys.modules[__name__] = _impl
