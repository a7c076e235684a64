"""The Responses API's services: grounded answers (file_search) over the chat engine,
and stored responses with their conversation chains."""
