"""The Responses API's services: stored responses and conversation chains."""
