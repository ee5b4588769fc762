"""The image cache: build planned package sets into images, store them by content,
publish a manifest atomically, and rebuild it all from descriptors (`ais rebuild`).

Modules: `build` (staging root -> checked ext4 image), `store` (content-addressed
images/ and tmp/), `manifest` (the published state, atomic replace), `lock`
(one rebuild at a time), `verify` (hash checks of stored images), `rebuild`
(the cron entry), `status` (what is published, what a rebuild would change),
`commands` (the `ais rebuild` and `ais cache status` subcommands).
"""
