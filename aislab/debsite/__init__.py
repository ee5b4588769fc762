"""The real site: RPMs made from Debian bookworm's own packages (the lab, never imported by ais/).

index.py reads the apt lists; select.py chooses the base and the roles' packages at two
patch levels; fetch.py downloads the .debs with apt-get; translate.py turns Debian
control data and maintainer scripts into RPM tags and scriptlets (pure functions);
convert.py turns one .deb into one RPM with rpmbuild; build.py (`python -m aislab.debsite`)
builds the repository incrementally, checks the whole site (name clashes, file
conflicts) and writes the real site's SCDs.
"""
