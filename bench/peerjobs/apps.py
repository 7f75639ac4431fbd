from django.apps import AppConfig


class PeerJobsConfig(AppConfig):
    name = "bench.peerjobs"
    label = "bench_peerjobs"
