"""Chapters 02-04: the quantizers. One scale per tensor (02), per row or column (03), or per
block (04), each a kernel that finds the finite amax, computes the scale and encodes, matching
[`tutorial.reference`][tutorial.reference] bit for bit. [`common`][tutorial.quant.common]
holds what they share, [`encoders`][tutorial.quant.encoders] the code of a quotient rounded
once."""
