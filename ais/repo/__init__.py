"""The RPM repository: building the demo repository from packages/*.spec
(`ais.repo.build`), reading its repodata and resolving requests with libsolv
(`ais.repo.solver`), scriptlet counts from RPM headers (`ais.repo.headers`) and
the dependency closure of package sets (`ais.repo.closure`)."""
