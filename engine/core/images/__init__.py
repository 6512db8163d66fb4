"""Image intake: read any image safely, upright and RGB, and map boxes between 0–1000 and pixels."""
