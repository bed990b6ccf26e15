"""Input, output and progress, with no imports from the rest of sppo_hub:

- `prompts`: prompt lists from files (jsonl, json, parquet, csv, txt) or Hub datasets;
- `sharding`: the chunk grid that makes generation and judging resumable and splittable (`--shard i/n`);
- `lazy_api`: the first-use imports behind the packages' `__init__` API lists;
- `console`: quiet libraries, one progress display per stage, the closing "next steps", the torch thread policy.

Import the module you need (`from sppo_hub.io import sharding`); nothing is imported here.
"""

__all__ = ["console", "prompts", "sharding"]
