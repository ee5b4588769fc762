"""The RPM repository: building the demo repository from packages/*.spec
(`ais.repo.build`) and reading RPM headers into `ais.model.Package`
(`ais.repo.headers`)."""
