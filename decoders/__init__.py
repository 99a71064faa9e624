"""Everything that turns samples into beliefs. No I/O, no clocks: every stage is a pure
function of its inputs and state, so a replay reproduces it bit for bit."""
