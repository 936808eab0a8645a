from dosing.cli import main

main()
