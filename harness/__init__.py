"""Process helpers shared by the tests, the demo and the benchmarks: a real broker,
the RTSP camera simulator, the daemon itself and an MQTT observer."""
