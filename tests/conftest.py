import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# No test reaches the announcement feeds on the Internet: every server a test starts (in this
# process or as a subprocess, which inherits the environment) fetches them from a loopback
# port nothing listens on, refused at once. Tests of the feeds set feed_url themselves.
os.environ.setdefault("TRIOPRINT_ANNOUNCEMENTS_URL", "http://127.0.0.1:9/{name}.xml")
# Nor GitHub's API (the update manager's web clients), nor apt: a test never reads or changes
# the host's packages.
os.environ.setdefault("TRIOPRINT_GITHUB_API", "http://127.0.0.1:9")
os.environ.setdefault("TRIOPRINT_APT", "off")

# No test reaches the host's init system: every server a test starts (in this process or as a
# subprocess) uses [machine] provider none unless its config says otherwise; the tests of the
# services inject a double runner.
os.environ.setdefault("TRIOPRINT_MACHINE_PROVIDER", "none")
