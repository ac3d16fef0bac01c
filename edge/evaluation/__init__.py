"""Motion evaluation: the daemon's decode -> detector -> tracker path run on video files
and generated hard cases, scored against per-frame labels, with two baselines."""
