"""`make bench`: the whole path measured through the Envoy edge, beside baselines of the same run."""
