#include "serve/chat_template.h"

#include <algorithm>

#include "engine/error.h"

namespace bf::serve {

ChatTemplate parse_chat_template(const std::string& flag, const std::string& name) {
  for (ChatTemplate t : {ChatTemplate::Plain, ChatTemplate::Llama2, ChatTemplate::Zephyr, ChatTemplate::ChatMl})
    if (name == chat_template_name(t)) return t;
  fail(flag, "'" + name + "' is not one of plain, llama2, zephyr, chatml");
}

const char* chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::Plain: return "plain";
    case ChatTemplate::Llama2: return "llama2";
    case ChatTemplate::Zephyr: return "zephyr";
    case ChatTemplate::ChatMl: return "chatml";
  }
  return "?";
}

ChatTemplate recognize_chat_template(const std::string& jinja) {
  if (jinja.empty()) return ChatTemplate::Plain;
  if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplate::ChatMl;
  if (jinja.find("<|user|>") != std::string::npos && jinja.find("<|assistant|>") != std::string::npos)
    return ChatTemplate::Zephyr;
  if (jinja.find("[INST]") != std::string::npos) return ChatTemplate::Llama2;
  const std::string first = jinja.substr(0, std::min<size_t>(jinja.find('\n'), 60));
  fail("chat template", "the model's tokenizer.chat_template is not one of llama2, zephyr, chatml ('" + first +
                            "...'); give --chat-template");
}

std::vector<std::string> chat_stops(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::Plain: return {"\nUser:", "\nSystem:"};
    case ChatTemplate::Llama2: return {"[INST]", "</s>"};
    case ChatTemplate::Zephyr: return {"</s>", "<|user|>"};
    case ChatTemplate::ChatMl: return {"<|im_end|>", "<|im_start|>"};
  }
  return {};
}

std::string format_chat(ChatTemplate t, const std::vector<ChatMessage>& messages) {
  std::string out;
  switch (t) {
    case ChatTemplate::Plain:
      for (const ChatMessage& m : messages)
        out += (m.role == "system" ? "System: " : m.role == "user" ? "User: " : "Assistant: ") + m.content + "\n";
      return out + "Assistant:";
    case ChatTemplate::Llama2: {
      // [INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]
      std::string system;
      bool first = true;
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          system += (system.empty() ? "" : "\n") + m.content;
        } else if (m.role == "user") {
          out += std::string(first ? "" : "<s>") + "[INST] ";
          if (!system.empty()) out += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
          system.clear();
          out += m.content + " [/INST]";
          first = false;
        } else {
          out += " " + m.content + " </s>";
        }
      }
      return out;
    }
    case ChatTemplate::Zephyr:
      for (const ChatMessage& m : messages) out += "<|" + m.role + "|>\n" + m.content + "</s>\n";
      return out + "<|assistant|>\n";
    case ChatTemplate::ChatMl:
      for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return out + "<|im_start|>assistant\n";
  }
  return out;
}

}  // namespace bf::serve
