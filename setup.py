"""The one thing pyproject.toml cannot say: the optional C extension for the guest-call hot path.

``mvactors.vm._fastcall`` (mvactors/vm/_fastcall.c) is built on the limited API, so one
build serves every CPython >= 3.11 (an abi3 wheel).  It is optional: when no C compiler
works, installation still succeeds and mvactors uses its pure-Python call path
(``mvactors.vm._calls.CALL_PATH`` says which is active).  On Linux the pinned zig compiles
it for a manylinux wheel (build_hook.BuildExt, named in pyproject.toml's cmdclass).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mvactors.vm._fastcall",
            ["mvactors/vm/_fastcall.c"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            optional=True,
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
