"""Compile hello.js with the Microvium compiler, run it, snapshot it, and resume the snapshot."""

from pathlib import Path

import mvactors

HERE = Path(__file__).parent


def main() -> None:
    snapshot = mvactors.compile(HERE / "hello.js")
    print(f"compiled hello.js to a {len(snapshot)}-byte snapshot")

    with mvactors.VM.restore(snapshot, imports={1: print}) as vm:
        say_hello = vm.exports[1]
        say_hello("World")
        say_hello("Python")
        saved = vm.create_snapshot()

    # The saved snapshot carries the guest's state (its greeting counter) to a new VM.
    with mvactors.VM.restore(saved, imports={1: print}) as resumed:
        count = resumed.exports[1]("again")
    print(f"resumed from a {len(saved)}-byte snapshot; greetings so far: {count}")


if __name__ == "__main__":
    main()
