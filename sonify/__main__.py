from .cli.commands import command

command()
