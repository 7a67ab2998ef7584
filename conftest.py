"""At the repository root so that pytest puts the root on `sys.path`: the tests import the
`benchmarks/` folder, which is not part of the installed package."""
