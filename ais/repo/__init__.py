"""The RPM repository: reading its repodata and resolving requests with libsolv
(`ais.repo.solver`), scriptlet counts from RPM headers (`ais.repo.headers`) and
the dependency closure of package sets (`ais.repo.closure`). The demo
repository is built by the lab (`aislab.demo_repo`)."""
