// Chat templates: a conversation as the one prompt string a model was trained to continue: the
// three families llama-architecture chat models use, and a plain role-prefixed default that a
// base model (llama2.c files) continues sensibly.
#pragma once

#include <string>
#include <vector>

namespace bf::serve {

enum class ChatTemplate { Plain, Llama2, Zephyr, ChatMl };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// "plain", "llama2", "zephyr", "chatml"; throws bf::Error naming `flag` for another name.
ChatTemplate parse_chat_template(const std::string& flag, const std::string& name);
const char* chat_template_name(ChatTemplate t);

// The family of a GGUF's tokenizer.chat_template (Jinja text), by the markers each family's
// template writes (as llama.cpp recognizes them: no Jinja engine); "" gives Plain. Throws bf::Error
// naming the template's first line when none is recognized.
ChatTemplate recognize_chat_template(const std::string& jinja);
// The strings that end the assistant's turn in the template's text (after which the model would
// write the next turn): the end of a reply.
std::vector<std::string> chat_stops(ChatTemplate t);

// The prompt: every message in order, then the assistant's turn opened for the model to write.
// The BOS token is the tokenizer's (encoded with bos), not part of the text.
std::string format_chat(ChatTemplate t, const std::vector<ChatMessage>& messages);

}  // namespace bf::serve
