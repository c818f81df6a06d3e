from ctax.cli import main

main()
