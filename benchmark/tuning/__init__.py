"""`bench tune`: the Ray Tune search over a method's declared space (`search`) and the trial that
scores one candidate on the validation split with the test split sealed (`candidate`)."""
