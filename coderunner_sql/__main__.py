"""`python -m coderunner_sql` runs the `coderunner-sql` command."""

from coderunner_sql.cli import main

if __name__ == "__main__":
    main(prog_name="coderunner-sql")
